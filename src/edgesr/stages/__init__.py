"""DVC stage entry points: each loads its config section, calls library code, writes what dvc.yaml declares.

Every stage is a plain function (``run(params, root)``) that tests call without DVC or Prefect; the
``edgesr <stage>`` CLI calls it with ``params.yaml`` of the working directory. No stage imports another
stage: what two stages share lives in the library (``edgesr.train.run``, ``edgesr.artifacts``, ...), and
``tests/test_dvc_deps.py`` checks that ``dvc.yaml`` lists exactly the code each stage imports.
"""
