"""Every Python process of the engine run (LLM, `vllm serve`, its engine core) in Pascal form.

On PYTHONPATH for run_vllm_engine.py's children only. With PASCAL_FORM set (61 or 60), the
process answers as a P40/P100 from its first import on (pascal_engine_form.install), so a
process vLLM spawns gets the same answers as its parent.
"""

import os

if os.environ.get("PASCAL_FORM"):
    import pascal_engine_form

    pascal_engine_form.install(int(os.environ["PASCAL_FORM"]))
