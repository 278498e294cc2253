"""int8 post-training quantization (paper 003): calibration patches, NNCF for OpenVINO, ONNX Runtime static
QDQ, layers kept in float by name, what each runtime really executes in int8, and the fp32 vs int8 report."""
