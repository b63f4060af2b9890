"""Checks of a checkpoint's training state (``state/``) against the run being resumed, made before
anything is loaded: a file that unpickles safely (``weights_only=True``) can still hold the wrong
keys, shapes, dtypes or types, and loading those crashes with a traceback or, inside a fused AdamW
step, corrupts memory. Each mismatch is one :class:`~uer.errors.UerError` line naming the file and
what is wrong, e.g. ``<ckpt>/state/optimizer.pt: state of parameter 3 (encoder.layers.0.ffn.w1.weight)
has exp_avg of shape (8, 4), the parameter is (4, 8)``.

The expected form of each file comes from the live objects it will be loaded into: the optimizer's
parameter groups and parameters, the schedule's and loss scaler's ``state_dict()``, the data
loader's ``state_dict()``, and ``torch.get_rng_state()``."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from uer.errors import UerError
from uer.train.checkpoint import STEP_DIR, rng_file

OPTIMIZER_STATE = {torch.optim.Adam: ({"step", "exp_avg", "exp_avg_sq"}, {"max_exp_avg_sq"}),
                   torch.optim.SGD: (set(), {"momentum_buffer"})}
"""Per-parameter state of the optimizers :func:`uer.train.optim.build_optimizer` builds: (keys a
parameter's state must have once it has any, keys it may have). AdamW is a subclass of Adam."""
COUNTERS = ("step", "samples_seen", "tokens_seen", "skipped_steps")


def describe(value) -> str:
    """A short description of a value found in a state file, for error messages."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, (bool, int, float, str)) or value is None:
        text = repr(value)
        return f"{text if len(text) <= 40 else text[:37] + '...'} ({type(value).__name__})"
    return f"a {type(value).__name__}"


def check_form(value, template, where: str, key: str = "", allow_missing: bool = False) -> None:
    """Raise unless ``value`` has the form of ``template``: dicts with the same keys (with
    ``allow_missing``, keys starting with ``_`` may be absent), lists and tuples of the same length,
    tensors of the same dtype and shape, bools, ints, finite floats (an int is fine where a float
    is), None and strings, recursively. ``where`` names the file, ``key`` the value's path in it.

    Raises:
        UerError: the first difference, e.g. ``<file>: last_epoch is '3' (str), expected an int``.
    """
    def fail(expected: str):
        raise UerError(f"{where}: {key or 'the content'} is {describe(value)}, expected {expected}")

    if isinstance(template, dict):
        if not isinstance(value, dict):
            fail("a dict")
        extra = [str(k) for k in value if k not in template]
        missing = [k for k in template if k not in value and not (allow_missing and str(k).startswith("_"))]
        if extra or missing:
            raise UerError(f"{where}: {key or 'the content'} has " + "; ".join(
                ([f"unknown keys {extra[:5]}"] if extra else []) + ([f"no {missing[:5]}"] if missing else [])))
        for k in value:
            check_form(value[k], template[k], where, f"{key}.{k}" if key else str(k), allow_missing)
    elif isinstance(template, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(template):
            fail(f"a list of {len(template)}")
        for i, (v, t) in enumerate(zip(value, template)):
            check_form(v, t, where, f"{key}[{i}]", allow_missing)
    elif isinstance(template, torch.Tensor):
        if not isinstance(value, torch.Tensor) or value.dtype != template.dtype or value.shape != template.shape:
            fail(describe(template))
    elif isinstance(template, bool):
        if not isinstance(value, bool):
            fail("a bool")
    elif isinstance(template, int):
        if not isinstance(value, int) or isinstance(value, bool):
            fail("an int")
    elif isinstance(template, float):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            fail("a finite number")
    elif (template is None or isinstance(template, str)) and type(value) is not type(template):
        fail(describe(template))


def check_optimizer(path: Path, saved, optimizer: torch.optim.Optimizer, names: dict[int, str]) -> None:
    """``optimizer.pt`` against ``optimizer``: ``state`` and ``param_groups``, as many groups with as
    many parameters each, group keys of the same optimizer, and each parameter's state (the keys
    :data:`OPTIMIZER_STATE` lists; tensors of the parameter's shape and dtype; ``step`` a finite
    scalar >= 0). ``names``: ``id(parameter) -> name``, for the messages.

    Raises:
        UerError: the first mismatch; a file written by another optimizer (``optim.name`` changed).
    """
    if not isinstance(saved, dict) or set(saved) != {"state", "param_groups"}:
        raise UerError(f"{path}: is {describe(saved)}"
                       + (f" with keys {sorted(map(str, saved))[:5]}" if isinstance(saved, dict) else "")
                       + ", expected a dict of state and param_groups")
    groups, current = saved["param_groups"], optimizer.param_groups
    if not isinstance(groups, list) or len(groups) != len(current):
        raise UerError(f"{path}: has {len(groups) if isinstance(groups, list) else describe(groups)} parameter "
                       f"groups, the optimizer has {len(current)}")
    params: dict[int, tuple[int, torch.Tensor]] = {}  # saved id -> (position, parameter)
    for i, (group, live) in enumerate(zip(groups, current)):
        if not isinstance(group, dict) or not isinstance(group.get("params"), list):
            raise UerError(f"{path}: parameter group {i} is {describe(group)} without a list of params")
        if set(group) != set(live):
            changed = sorted(set(group) ^ set(live))
            raise UerError(f"{path}: written by another optimizer (its parameter groups differ in {changed}); "
                           "optim.name cannot change on resume: start a new trainer.output_dir from this "
                           "checkpoint with trainer.init_from")
        if len(group["params"]) != len(live["params"]):
            raise UerError(f"{path}: parameter group {i} has {len(group['params'])} parameters, the optimizer's "
                           f"has {len(live['params'])}")
        for pid, param in zip(group["params"], live["params"]):
            if not isinstance(pid, int) or isinstance(pid, bool) or pid in params:
                raise UerError(f"{path}: parameter group {i} lists parameter id {pid!r} "
                               + ("twice" if pid in params else "(not an int)"))
            params[pid] = (len(params), param)
    if not isinstance(saved["state"], dict):
        raise UerError(f"{path}: state is {describe(saved['state'])}, expected a dict")
    required, allowed = next((keys for kind, keys in OPTIMIZER_STATE.items() if isinstance(optimizer, kind)),
                             (set(), None))
    for pid, entry in saved["state"].items():
        if pid not in params:
            raise UerError(f"{path}: holds state of parameter {pid!r}, which no parameter group lists")
        position, param = params[pid]
        what = f"{path}: state of parameter {position} ({names.get(id(param), '?')})"
        check_parameter_state(what, entry, param, required, None if allowed is None else required | allowed)


def check_parameter_state(what: str, entry, param: torch.Tensor, required: set[str],
                          allowed: set[str] | None) -> None:
    """One parameter's optimizer state (``what`` names it): a dict with the ``required`` keys and no
    key outside ``allowed`` (None: any); ``step`` a finite scalar >= 0; every other value a tensor of
    the parameter's shape and dtype.

    Raises:
        UerError: the first mismatch.
    """
    if not isinstance(entry, dict):
        raise UerError(f"{what} is {describe(entry)}, expected a dict")
    missing = sorted(required - set(entry)) if entry else []
    unknown = sorted(str(k) for k in entry if allowed is not None and k not in allowed)
    if missing or unknown:
        raise UerError(f"{what} has " + "; ".join(([f"no {missing}"] if missing else [])
                                                  + ([f"unknown keys {unknown}"] if unknown else [])))
    for key, value in entry.items():
        if key == "step":
            number = value.item() if isinstance(value, torch.Tensor) and value.ndim == 0 else value
            if not isinstance(number, (int, float)) or isinstance(number, bool) or not 0 <= number < math.inf:
                raise UerError(f"{what} has step {describe(value)}, expected a finite scalar >= 0")
        elif not isinstance(value, torch.Tensor):
            raise UerError(f"{what} has {key} {describe(value)}, expected a tensor like the parameter")
        elif value.shape != param.shape:
            raise UerError(f"{what} has {key} of shape {tuple(value.shape)}, the parameter is {tuple(param.shape)}")
        elif value.dtype != param.dtype:
            raise UerError(f"{what} has {key} of dtype {value.dtype}, the parameter is {param.dtype}")


def check_rng(path: Path, rng) -> None:
    """An RNG state file: ``{"torch": the CPU generator's state (uint8, the length of
    torch.get_rng_state())}`` and optionally ``"cuda"`` (uint8, one row per device; its row length
    and number of rows checked where CUDA is available).

    Raises:
        UerError: another form.
    """
    if isinstance(rng, dict) and "cuda" in rng:
        cuda = rng["cuda"]
        if not isinstance(cuda, torch.Tensor) or cuda.dtype != torch.uint8 or cuda.ndim != 2:
            raise UerError(f"{path}: cuda is {describe(cuda)}, expected a torch.uint8 tensor of one row per device")
        if torch.cuda.is_available():
            rows, length = torch.cuda.device_count(), torch.cuda.get_rng_state().numel()
            if cuda.shape[0] > rows or cuda.shape[1] != length:
                raise UerError(f"{path}: cuda has shape {tuple(cuda.shape)}, expected at most {rows} rows of "
                               f"{length} bytes")
        rng = {k: v for k, v in rng.items() if k != "cuda"}
    check_form(rng, {"torch": torch.get_rng_state()}, str(path))


def check_counters(path: Path, saved, trainer, step_of_dir: int | None) -> None:
    """``trainer.json``: the counters (:data:`COUNTERS`, ints >= 0; ``skipped_steps`` optional)
    equal to the checkpoint directory's step, the data position in the form of the loader's
    ``state_dict()`` and within an epoch, and the loss scaler's state (checked when both the file
    and the run have one).

    Raises:
        UerError: the first mismatch.
    """
    if not isinstance(saved, dict):
        raise UerError(f"{path}: the content is {describe(saved)}, expected a dict")
    missing = [k for k in ("step", "samples_seen", "tokens_seen", "data") if k not in saved]
    if missing:
        raise UerError(f"{path}: has no {missing}")
    for key in COUNTERS:
        value = saved.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise UerError(f"{path}: {key} is {describe(value)}, expected an int >= 0")
    if step_of_dir is not None and saved["step"] != step_of_dir:
        raise UerError(f"{path}: step is {saved['step']}, but the checkpoint is that of step {step_of_dir}")
    loader = trainer.train_loader
    check_form(saved["data"], loader.state_dict(), str(path), "data")
    data = saved["data"]
    if data["epoch"] < 0 or not 0 <= data["position"] <= len(loader) or data["batch_size"] < 1 or data["world_size"] < 1:
        raise UerError(f"{path}: data position {data} is out of range (an epoch has {len(loader)} batches)")
    if trainer.scaler is not None and saved.get("scaler"):
        check_form(saved["scaler"], trainer.scaler.state_dict(), str(path), "scaler")
        if saved["scaler"]["scale"] <= 0:
            raise UerError(f"{path}: scaler.scale is {saved['scaler']['scale']}, expected > 0")


def check_scheduler(path: Path, saved, scheduler, step: int) -> None:
    """``scheduler.pt``: the form of the schedule's ``state_dict()`` (private ``_`` keys of another
    torch version may be absent) and ``last_epoch`` equal to the step (the schedule is stepped once
    per optimizer step).

    Raises:
        UerError: the first mismatch.
    """
    check_form(saved, scheduler.state_dict(), str(path), allow_missing=True)
    if saved["last_epoch"] != step:
        raise UerError(f"{path}: last_epoch is {saved['last_epoch']}, but trainer.json says step {step}")


def check_dcp(directory: Path, model: torch.nn.Module) -> None:
    """``state/dcp`` (FSDP2 shards, :mod:`torch.distributed.checkpoint`): its ``.metadata`` is
    readable and lists every parameter of ``model`` (``model.<name>``) with the parameter's global
    shape and dtype, and any optimizer state of it (``optimizer.state.<name>.<key>``, except
    ``step``) with the same shape.

    Raises:
        UerError: missing or unreadable metadata, or the first mismatch.
    """
    from torch.distributed.checkpoint import FileSystemReader  # lazy: FSDP2 only, and slow to import
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    path = directory / ".metadata"
    if not path.is_file():
        raise UerError(f"{path}: missing; the sharded training state is incomplete")
    try:
        entries = FileSystemReader(str(directory)).read_metadata().state_dict_metadata
    except Exception as e:  # noqa: BLE001 - any failure to read the metadata is the same one line
        raise UerError(f"{path}: not readable ({(str(e).splitlines() or [type(e).__name__])[0]})") from None
    for name, param in model.named_parameters():
        states = {key[len(f"optimizer.state.{name}."):]: entry for key, entry in entries.items()
                  if key.startswith(f"optimizer.state.{name}.") and "." not in key[len(f"optimizer.state.{name}."):]}
        for key, entry in [("model", entries.get(f"model.{name}")), *states.items()]:
            if key == "step":
                continue
            what = f"{path}: {'model' if key == 'model' else f'optimizer state {key} of'} {name}"
            if not isinstance(entry, TensorStorageMetadata):
                raise UerError(f"{what} is {'missing' if entry is None else 'not a tensor'}")
            if tuple(entry.size) != tuple(param.shape) or entry.properties.dtype != param.dtype:
                raise UerError(f"{what} is {entry.properties.dtype} of shape {tuple(entry.size)}, the parameter is "
                               f"{param.dtype} of shape {tuple(param.shape)}")


def check_state(checkpoint: Path, state: dict, trainer, rank: int = 0) -> None:
    """Check every file of ``checkpoint/state`` (as read by :func:`uer.train.checkpoint.load_state`)
    against ``trainer`` (a :class:`~uer.train.trainer.Trainer`) before any of it is loaded: the
    counters first (their step is what the schedule is checked against), then the optimizer state
    (``optimizer.pt``, or the DCP metadata when sharded), the schedule and the RNG state of ``rank``.

    Raises:
        UerError: one line naming the file and what is wrong.
    """
    state_dir = Path(checkpoint) / "state"
    match = STEP_DIR.match(Path(checkpoint).name)
    check_counters(state_dir / "trainer.json", state["trainer"], trainer, int(match.group(1)) if match else None)
    if state["optimizer"] is None:
        check_dcp(state_dir / "dcp", trainer.model)
    else:
        names = {id(p): name for name, p in trainer.model.named_parameters()}
        check_optimizer(state_dir / "optimizer.pt", state["optimizer"], trainer.optimizer, names)
    check_scheduler(state_dir / "scheduler.pt", state["scheduler"], trainer.scheduler, state["trainer"]["step"])
    if state["rng"] is not None:
        check_rng(state_dir / rng_file(rank), state["rng"])
