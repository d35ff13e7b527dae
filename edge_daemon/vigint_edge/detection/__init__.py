"""Detection: the OpenVINO detector, its labels and model conversion, tracking and zones."""
