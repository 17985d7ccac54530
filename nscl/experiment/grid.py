"""A grid of experiments, methods x benchmarks x seeds, each a resumable run in its own directory, on Ray.

    runs = expand(["nsp2", "dmnsp"], ["shapes100-10s", "shapes100-tinted-10s"], [0, 1, 2], "runs/tiny",
                  epochs=1, max_tasks=2)
    outcomes = sweep(runs)                      # Ray: local by default, address="ray://..." / "auto" for a cluster

Each grid point is an `ExperimentConfig` with one seed, run into run_root/<method>/<benchmark>/seed<k>:
one subdirectory per method label (checkpoint, accuracy.csv, metrics.json, config.json, run.json),
the point's metrics.csv and status.json (running / done / failed, the config, the error). Every point
is validated before anything is dispatched. A sweep started again skips the points whose status.json
says done for the same config and resumes the others from their checkpoints (`nscl.experiment.run`). A failing
point does not stop the others; its error is in its status.json and in the returned outcomes.

Resources: one GPU per point when the cluster has GPUs (device 'auto' or 'cuda'), else one CPU slot.
Without Ray installed (pip install "nscl[sweep]"), the grid runs sequentially in this process.
"""

from __future__ import annotations

import json
import socket
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

from nscl.experiment.checkpoints import RunMismatchError
from nscl.experiment.config import DEFAULT_BACKBONE, ExperimentConfig
from nscl.experiment.experiment import check_seeds, merge_metrics_csv
from nscl.experiment.result import metrics_frame, slug
from nscl.files import atomic_write_text, read_json

__all__ = [
    "SweepRun",
    "expand",
    "sweep",
    "run_point",
    "format_outcomes",
    "failed_points",
    "method_family",
    "point_dir",
    "STATUS_FILE",
]

STATUS_FILE = "status.json"
RAY_WAIT_SECONDS = 30.0  # each wait for a finished point is bounded; the loop then checks the cluster
_VOLATILE = ("progress", "run_root", "device")  # changing these does not make a finished point unfinished
# fields added to ExperimentConfig after points were finished: at their default (None) they are left out, so a
# point recorded before the field existed stays finished
_ADDED_LATER = ("own_data",)


@dataclass(frozen=True)
class SweepRun:
    """One grid point: a config with a single seed and the directory it runs in."""

    config: ExperimentConfig
    run_dir: Path

    def __post_init__(self) -> None:
        if self.config.seeds is None or len(self.config.seeds) != 1:
            raise ValueError(f"a sweep point runs one seed; got seeds={self.config.seeds!r}")

    @property
    def key(self) -> str:
        return f"{method_family(self.config)}/{self.config.benchmark_id}/seed{self.config.seeds[0]}"


def method_family(config: ExperimentConfig) -> str:
    """The method, with the backbone when it is not the method's own: 'nsp2', 'nsp2-clip', 'dmnsp'."""
    return (
        config.method
        if config.backbone_id == DEFAULT_BACKBONE[config.method]
        else f"{config.method}-{config.backbone_id}"
    )


def point_dir(run_root: str | Path, config: ExperimentConfig) -> Path:
    return Path(run_root) / method_family(config) / config.benchmark_id / f"seed{config.seeds[0]}"


def expand(
    methods: Sequence[str],
    benchmarks: Sequence[str | None],
    seeds: Sequence[int],
    run_root: str | Path,
    base: ExperimentConfig | dict | None = None,
    **settings,
) -> list[SweepRun]:
    """Every (method, benchmark, seed) as a validated SweepRun; one ValueError lists every invalid point.

    base / settings: the other ExperimentConfig fields, shared by every point (settings win).
    """
    seeds = check_seeds(seeds, "sweep seeds")
    if isinstance(methods, str) or isinstance(benchmarks, str):
        raise ValueError("methods and benchmarks must be lists, e.g. ['nsp2', 'dmnsp'] and ['shapes100-10s']")
    if not methods or not benchmarks:
        raise ValueError(f"a sweep needs at least one method and one benchmark; got {methods!r}, {benchmarks!r}")
    shared = base.to_dict() if isinstance(base, ExperimentConfig) else dict(base or {})
    shared.update(settings)
    for grid_field in ("method", "benchmark", "seeds", "run_root"):
        shared.pop(grid_field, None)
    runs, errors = [], []
    for method in methods:
        for benchmark in benchmarks:
            try:
                config = ExperimentConfig.from_dict(shared, method=method, benchmark=benchmark, seeds=[seeds[0]])
            except ValueError as err:
                errors.append(f"{method} on {benchmark or 'its default benchmark'}: {err}")
                continue
            for seed in seeds:
                one = config.replace(seeds=(seed,))
                runs.append(SweepRun(one, point_dir(run_root, one)))
    if errors:
        raise ValueError("the sweep has invalid points (nothing was run):\n  " + "\n  ".join(errors))
    return runs


def _comparable(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in _VOLATILE and not (k in _ADDED_LATER and v is None)}


def _covers(done: dict, asked: dict) -> bool:
    """A finished point's config covers the asked one: the same settings, and every DMNSP variant asked for among
    those it ran (a point run with variants paper and update is finished for a grid that asks for paper alone,
    so two grids sharing a point do not rerun it in turn)."""
    done, asked = _comparable(done), _comparable(asked)
    ran, wanted = done.pop("variants", None), asked.pop("variants", None)
    if set(wanted or ("paper",)) - set(ran or ("paper",)):
        return False
    return done == asked


def _read_status(run_dir: Path) -> dict | None:
    return read_json(run_dir / STATUS_FILE)


def _write_status(run_dir: Path, status: dict) -> None:
    atomic_write_text(run_dir / STATUS_FILE, json.dumps(status, indent=2, default=str))


def is_finished(run: SweepRun) -> bool:
    status = _read_status(run.run_dir)
    return bool(status and status.get("state") == "done" and _covers(status.get("config", {}), run.config.to_dict()))


def run_point(config: dict, run_dir: str) -> dict:
    """Run one grid point (in a Ray worker or in this process); returns its status, never raises."""
    path = Path(run_dir)
    start = time.time()
    previous = _read_status(path)
    status: dict[str, Any] = {
        "key": None,
        "state": "running",
        "config": config,
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "error": None,
    }
    try:
        cfg = ExperimentConfig.from_dict(config)
        status["key"] = f"{method_family(cfg)}/{cfg.benchmark_id}/seed{cfg.seeds[0]}"
        _write_status(path, status)
        experiment = cfg.experiment()
        seed = cfg.seeds[0]
        data = experiment.data(seed)
        results = {}
        for name in cfg.selected_methods():
            results[(name, seed)] = experiment.run_one(name, seed, path / slug(name), data)
        merge_metrics_csv(path / "metrics.csv", metrics_frame(results))
        status.update(
            state="done",
            methods=[name for name, _ in results],
            tasks_done={name: int(r.accuracy.shape[0]) for (name, _), r in results.items()},
        )
    except Exception as err:  # reported, not raised: one failing point must not stop the grid
        status.update(state="failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc())
        if isinstance(err, RunMismatchError) and (previous or {}).get("state") == "done":
            # a rerun with other settings was refused and nothing was touched: the finished point stays finished
            _write_status(path, previous)
            return {**status, "seconds": round(time.time() - start, 1), "note": "the finished point was left as it was"}
    status["seconds"] = round(time.time() - start, 1)
    _write_status(path, status)
    return status


def _ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def sweep(
    runs: Iterable[SweepRun],
    address: str | None = None,
    backend: str = "auto",
    num_cpus: int | None = None,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Run every point not yet done (resuming unfinished ones); one outcome dict per point, in order.

    backend: "ray" (Ray required), "local" (sequential, this process) or "auto" (Ray when installed).
    address: a Ray cluster ("auto", "host:port", "ray://host:10001"); None starts a local Ray with
    `num_cpus` slots (None: all cores). Outcome keys: key, state (done / skipped / failed), error,
    seconds, run_dir.
    """
    if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1):
        # Ray would start with no slot for any point and wait for one forever
        raise ValueError(
            f"num_cpus={num_cpus!r}: every point needs a CPU slot; give an integer >= 1, or None for all cores"
        )
    runs = list(runs)
    keys = [str(r.run_dir.resolve()) for r in runs]
    if len(set(keys)) != len(keys):
        raise ValueError("two sweep points share a run directory; give them different seeds, methods or benchmarks")
    if backend not in ("auto", "ray", "local"):
        raise ValueError(f"backend={backend!r}: accepted: 'auto', 'ray', 'local'")
    if backend == "auto":
        backend = "ray" if _ray_available() else "local"
        if backend == "local":
            warnings.warn(
                "Ray is not installed (pip install 'nscl[sweep]' or 'ray'): the grid runs sequentially in this process",
                RuntimeWarning,
                stacklevel=2,
            )
    elif backend == "ray" and not _ray_available():
        raise RuntimeError("backend='ray' but Ray is not installed: pip install 'nscl[sweep]' (or 'ray')")
    if backend == "local" and address is not None:
        raise ValueError("address is for a Ray cluster; it needs backend='ray' or 'auto' with Ray installed")

    outcomes: dict[int, dict] = {}
    todo: list[int] = []
    for i, run in enumerate(runs):
        if is_finished(run):
            outcomes[i] = {
                "key": run.key,
                "state": "skipped",
                "error": None,
                "seconds": 0.0,
                "run_dir": str(run.run_dir),
                "note": "done before",
            }
            log(f"[sweep] {run.key}: done before, skipped")
        else:
            todo.append(i)
    if todo:
        runner = _run_on_ray if backend == "ray" else _run_locally
        for i, status in runner([runs[i] for i in todo], todo, address, num_cpus, log):
            outcomes[i] = {
                "key": runs[i].key,
                "state": status["state"],
                "error": status.get("error"),
                "seconds": status.get("seconds"),
                "run_dir": str(runs[i].run_dir),
            }
    return [outcomes[i] for i in range(len(runs))]


def _log_outcome(log, run: SweepRun, status: dict) -> None:
    if status["state"] == "done":
        log(f"[sweep] {run.key}: done in {status.get('seconds')} s")
    else:
        log(f"[sweep] {run.key}: FAILED: {status.get('error')}")


def _run_locally(runs, indices, address, num_cpus, log):
    for i, run in zip(indices, runs):
        config = run.config.replace(device=run.config.resolved_device).to_dict()
        log(f"[sweep] {run.key}: running")
        status = run_point(config, str(run.run_dir))
        _log_outcome(log, run, status)
        yield i, status


def _run_on_ray(runs, indices, address, num_cpus, log):
    import ray

    if not ray.is_initialized():
        if address is None:
            ray.init(num_cpus=num_cpus, include_dashboard=False)
        else:
            ray.init(address=address)
    gpus = ray.cluster_resources().get("GPU", 0)
    if ray.cluster_resources().get("CPU", 0) < 1:
        raise RuntimeError(
            f"the Ray cluster{f' at {address}' if address else ''} offers no CPU, so no point could ever start; "
            "start it with CPUs (ray start --num-cpus N) or run with backend='local'"
        )
    remote = ray.remote(max_retries=0)(run_point)
    pending = {}
    for i, run in zip(indices, runs):
        device = run.config.device
        if device.startswith("cuda") and gpus < 1:
            status = {
                "state": "failed",
                "seconds": 0.0,
                "error": f"device={device!r} but the Ray cluster has no GPU; use device='auto' or 'cpu'",
            }
            _write_status(run.run_dir, {**status, "key": run.key, "config": run.config.to_dict()})
            _log_outcome(log, run, status)
            yield i, status
            continue
        use_gpu = gpus >= 1 and (device == "auto" or device.startswith("cuda"))
        config = run.config.replace(device="cuda" if use_gpu else ("cpu" if device == "auto" else device)).to_dict()
        options = {"num_cpus": 1, "num_gpus": 1} if use_gpu else {"num_cpus": 1}
        pending[remote.options(**options).remote(config, str(run.run_dir))] = (i, run)
    log(
        f"[sweep] {len(pending)} point(s) dispatched on Ray ({ray.cluster_resources().get('CPU', 0):g} CPUs, "
        f"{gpus:g} GPUs)"
    )
    while pending:
        # a bounded wait: between waits, a cluster that lost every CPU fails the points instead of hanging
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=RAY_WAIT_SECONDS)
        if not ready and ray.cluster_resources().get("CPU", 0) < 1:
            for ref, (i, run) in list(pending.items()):
                ray.cancel(ref, force=True)
                status = {"state": "failed", "seconds": None, "error": "the Ray cluster has no CPU left to run it"}
                _write_status(run.run_dir, {**status, "key": run.key, "config": run.config.to_dict()})
                _log_outcome(log, run, status)
                yield i, status
            return
        for ref in ready:
            i, run = pending.pop(ref)
            try:
                status = ray.get(ref)
            except Exception as err:  # the worker died (killed, out of memory): the point stays resumable
                status = {"state": "failed", "seconds": None, "error": f"{type(err).__name__}: {err}"}
                old = _read_status(run.run_dir) or {}
                _write_status(run.run_dir, {**old, **status, "key": run.key, "config": run.config.to_dict()})
            _log_outcome(log, run, status)
            yield i, status


def format_outcomes(outcomes: Sequence[dict]) -> str:
    frame = pd.DataFrame(outcomes)
    if not len(frame):
        return "(no points)"
    counts = frame.state.value_counts().to_dict()
    lines = [f"{len(frame)} point(s): " + ", ".join(f"{n} {state}" for state, n in counts.items())]
    for row in outcomes:
        if row["state"] == "failed":
            lines.append(f"  FAILED {row['key']} ({row['run_dir']}): {row['error']}")
    return "\n".join(lines)


# -- gathering results -----------------------------------------------------------------------------


def failed_points(run_root: str | Path) -> list[dict]:
    """status.json of every failed sweep point under run_root."""
    failed = []
    for path in sorted(Path(run_root).rglob(STATUS_FILE)):
        status = _read_status(path.parent)
        if status and status.get("state") == "failed":
            failed.append({"key": status.get("key"), "run_dir": str(path.parent), "error": status.get("error")})
    return failed
