"""What ``python -m lstm_ext`` runs, built on the library's public API: the self-check
(``selfcheck``), the demos (``demos``), the benchmark (``bench``, its ``grid`` and ONNX Runtime's
side, ``ort_bench``) and the processes they measure in (``probes``). The library never imports
this package.
"""
