"""What every job shares."""
import subprocess
import sys

def test_a_job_imports_only_what_its_stage_needs():
    """Each rule group's stages are their own module, loaded on first use: the data job starts
    without the model libraries, fine-tuning without the statistics."""
    code = ("import sys; from mrd_unlearning.stages import {name}; "
            "print(sorted(m for m in ('torch', 'transformers', 'scipy.stats', 'matplotlib') if m in sys.modules))")
    loaded = {}
    for name in ("prepare_data", "finetune_model", "unlearn_runs"):
        done = subprocess.run([sys.executable, "-c", code.format(name=name)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        loaded[name] = done.stdout.strip()
    assert loaded == {"prepare_data": "[]", "finetune_model": "['torch', 'transformers']",
                      "unlearn_runs": "['scipy.stats', 'torch', 'transformers']"}
