"""Bad input fails early with a message that names the problem; an interrupted job leaves no
checkpoint that looks finished, and rerunning it completes."""
import signal
import subprocess
import sys
import time

import pytest

from mrd_unlearning import stages
from mrd_unlearning.stages import finetune
from mrd_unlearning.config import validate_config
from mrd_unlearning.models import load_checkpoint

from .conftest import MAX_LENGTH

MODEL = validate_config({"name": "t", "model": {"hidden_size": 16, "num_layers": 1, "num_heads": 2,
                                                "intermediate_size": 32, "max_length": MAX_LENGTH}})["model"]


def _finetune_cfg(max_epochs):
    """Exactly max_epochs (no memorisation criterion), schema defaults elsewhere."""
    return validate_config({"name": "t", "finetune": {"lr": 0.01, "batch_size": 4, "max_epochs": max_epochs,
                                                      "memorization_accuracy": None}})["finetune"]


def test_model_path_that_does_not_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        load_checkpoint(tmp_path / "nope", "cpu")


def test_failure_while_saving_leaves_no_checkpoint(data_dir, tmp_path, monkeypatch):
    tokenizer_dir = tmp_path / "tok"
    stages.build_tokenizer(str(data_dir), str(tokenizer_dir), vocab_size=400)
    out = tmp_path / "models" / "target"

    def broken_save(model, tokenizer, path, state_dict=None):
        path.mkdir(parents=True)
        (path / "config.json").write_text("{}")  # half a checkpoint, then the crash
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune, "save_checkpoint", broken_save)  # what finetune_model saves with
    kw = dict(model_cfg=MODEL, finetune_cfg=_finetune_cfg(1), seed=0, device="cpu", threads=1)
    with pytest.raises(KeyboardInterrupt):
        stages.finetune_model("target", str(data_dir), str(tokenizer_dir), str(out), **kw)
    assert not out.exists() and not list(out.parent.iterdir())  # nothing that looks finished, no debris
    monkeypatch.undo()
    stages.finetune_model("target", str(data_dir), str(tokenizer_dir), str(out), **kw)
    load_checkpoint(out, "cpu")


@pytest.mark.e2e
def test_killed_mid_finetune_then_rerun_completes(data_dir, tmp_path):
    """SIGKILL (no chance to clean up) in the middle of fine-tuning, then the same job again."""
    tokenizer_dir = tmp_path / "tok"
    stages.build_tokenizer(str(data_dir), str(tokenizer_dir), vocab_size=400)
    out = tmp_path / "models" / "target"
    call = ("from mrd_unlearning import stages; stages.finetune_model('target', {data!r}, {tok!r}, {out!r}, "
            "model_cfg={model!r}, finetune_cfg={ft!r}, seed=0, device='cpu', threads=1)")
    args = dict(data=str(data_dir), tok=str(tokenizer_dir), out=str(out), model=MODEL)
    job = subprocess.Popen([sys.executable, "-c", call.format(ft=_finetune_cfg(100_000), **args)])
    time.sleep(8)  # well into training
    assert job.poll() is None, "fine-tuning ended before it could be interrupted"
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert not out.exists()
    done = subprocess.run([sys.executable, "-c", call.format(ft=_finetune_cfg(2), **args)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    load_checkpoint(out, "cpu")
