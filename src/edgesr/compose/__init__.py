"""ClassSR-style composition (paper 001 Sec. 4.3, Table 3; Kong et al. CVPR 2021; ARM, Chen et al. ECCV 2022).

Several SR branches of different cost behind one router that sends every LR patch to one of them:

- :mod:`~edgesr.compose.grid`: the patch grid that covers the whole image, and the overlap average;
- :mod:`~edgesr.compose.classifier`, :mod:`~edgesr.compose.losses`, :mod:`~edgesr.compose.training`:
  ClassSR's classifier, its class and average losses, its training with the branches frozen;
- :mod:`~edgesr.compose.edge`: ARM's training-free router (edge score -> PSNR table, knob ``eta``);
- :mod:`~edgesr.compose.runners`: branches that run a batch of patches per call in PyTorch, ONNX
  Runtime and OpenVINO;
- :mod:`~edgesr.compose.compiled`: the classifier's features compiled by OpenVINO;
- :mod:`~edgesr.compose.deployed`: the composed model of the deployed (exported, quantized) branches;
- :mod:`~edgesr.compose.composed`: the composed model; :mod:`~edgesr.compose.accounting`: its Mult-Adds;
  :mod:`~edgesr.compose.seams`: the error and the step where branches meet;
- :mod:`~edgesr.compose.evaluation`: every routing on a set of images; :mod:`~edgesr.compose.wallclock`:
  the composed model against its largest branch alone on the wall clock.
"""
