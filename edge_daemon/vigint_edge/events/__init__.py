"""Events: the per-camera pipeline that turns tracks into event lifecycle messages, and camera health."""
