"""Capture: reading a camera (RTSP or a file) at its own pace, and the motion gate."""
