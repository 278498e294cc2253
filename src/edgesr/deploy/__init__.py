"""Deployment: export (ONNX, OpenVINO IR), one runner interface for PyTorch / ONNX Runtime / OpenVINO,
where the deployed files live, and tiled upscaling with bounded memory (``edgesr upscale``)."""
