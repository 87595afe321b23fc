"""Runs an experiment as several JAX processes on this machine (one global device mesh), in one command.

Usage::

    python -m experiments.launch --processes=2 [--devices_per_process=4] [--port=0] [--timeout=120] \\
        -- --config=configs/demo.py:smoke --workdir=workdirs/demo_2proc [--config.key=value ...]

Everything after ``--`` is passed to ``python -m experiments.run`` in every process. Process ``i`` gets

    JAX_COORDINATOR_ADDRESS=127.0.0.1:PORT  JAX_NUM_PROCESSES=N  JAX_PROCESS_ID=i
    JAX_COORDINATOR_BIND_ADDRESS=127.0.0.1:PORT   (process 0's coordinator listens on loopback only)
    XLA_FLAGS=--xla_force_host_platform_device_count=D   (CPU: D emulated devices per process)

and ``research.train.maybe_initialize_distributed`` (called by the runner before the driver) joins them
with ``jax.distributed.initialize`` (gloo collectives on CPU). Process 0 hosts the coordinator and is the
only one that writes ``metrics.jsonl``, ``results.*``; checkpoints are written by all of them together.
If a process fails, the launcher stops the others and exits with its status, so a crash never leaves the
rest waiting in a collective.

On a cluster the same variables do the job without this launcher: export ``JAX_COORDINATOR_ADDRESS`` (host
of process 0 and a free port), ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` on each host, or run
``srun``/``mpirun python -m experiments.run ...`` (SLURM and Open MPI are detected by JAX).
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCALHOST = "127.0.0.1"


def free_port() -> int:
  """A TCP port on 127.0.0.1 that was free when asked (the OS picks it)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind((LOCALHOST, 0))
    return int(s.getsockname()[1])


def process_env(process_id: int, num_processes: int, port: int, devices_per_process: int, *,
                timeout_s: int = 120, base: dict | None = None) -> dict[str, str]:
  """The environment of process ``process_id`` of a localhost job (see the module docstring)."""
  env = dict(os.environ if base is None else base)
  flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
  if devices_per_process > 0:
    flags.append(f"--xla_force_host_platform_device_count={devices_per_process}")
  env.update({"XLA_FLAGS": " ".join(flags), "PYTHONUNBUFFERED": "1"})
  if num_processes > 1:
    env.update({"JAX_COORDINATOR_ADDRESS": f"{LOCALHOST}:{port}", "JAX_NUM_PROCESSES": str(num_processes),
                "JAX_PROCESS_ID": str(process_id), "RESEARCH_DIST_TIMEOUT": str(int(timeout_s)),
                # the coordinator listens on the loopback interface only (JAX's default is every interface)
                "JAX_COORDINATOR_BIND_ADDRESS": f"{LOCALHOST}:{port}"})
  else:                                        # one process: a plain run, no coordinator
    for var in ("JAX_COORDINATOR_ADDRESS", "JAX_COORDINATOR_BIND_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
      env.pop(var, None)
  env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
  if num_processes > 1 and process_id > 0:
    env.setdefault("RESEARCH_NO_PROGRESS", "1")
  return env


def launch(command: Sequence[str], processes: int, devices_per_process: int = 4, *, port: int = 0,
           timeout_s: int = 120, wall_limit_s: float | None = None, quiet_others: bool = False,
           log_prefix: str | None = None, env: dict | None = None) -> int:
  """Runs ``command`` (an argv list) as ``processes`` processes of one JAX job; returns the job's exit status.

  ``port = 0`` picks a free port. ``timeout_s`` bounds each process's wait for the coordinator and the
  others. ``wall_limit_s`` (optional) stops the whole job after that many seconds (status 124).
  ``quiet_others`` sends the output of processes 1.. to ``/dev/null``; ``log_prefix`` sends process ``i``'s
  output to ``{log_prefix}.{i}.log`` instead. The first process to fail stops the others; its status is
  returned.
  """
  if processes < 1:
    raise ValueError(f"--processes must be >= 1, got {processes}")
  if devices_per_process < 0:
    raise ValueError(f"--devices_per_process must be >= 0 (0: leave XLA_FLAGS alone), got {devices_per_process}")
  port = port or free_port()
  procs, logs = [], []
  for i in range(processes):
    out = subprocess.DEVNULL if (quiet_others and i > 0) else None
    if log_prefix is not None:
      os.makedirs(os.path.dirname(os.path.abspath(log_prefix)), exist_ok=True)
      out = open(f"{log_prefix}.{i}.log", "w")
      logs.append(out)
    procs.append(subprocess.Popen(list(command), stdout=out, stderr=out, start_new_session=True,
                                  env=process_env(i, processes, port, devices_per_process, timeout_s=timeout_s,
                                                  base=env)))
  t0 = time.monotonic()
  status = 0
  try:
    while True:
      codes = [p.poll() for p in procs]
      failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
      if failed:
        status = failed[0][1]
        if any(c is None for c in codes):
          print(f"[launch] process {failed[0][0]} exited with status {_shell_status(status)}; stopping the others",
                file=sys.stderr, flush=True)
        break
      if all(c == 0 for c in codes):
        break
      if wall_limit_s is not None and time.monotonic() - t0 > wall_limit_s:
        print(f"[launch] the job ran past {wall_limit_s:g} s; stopping it", file=sys.stderr, flush=True)
        status = 124
        break
      time.sleep(0.05)
  finally:
    for p in procs:
      if p.poll() is None:
        _stop(p)
    for f in logs:
      f.close()
  return _shell_status(status)


def _shell_status(status: int) -> int:
  """A Popen status as a shell reports it: killed by signal ``s`` -> ``128 + s``."""
  return 128 - status if status < 0 else status


def _stop(p: subprocess.Popen) -> None:
  """Ends process ``p`` and its children (it leads its own session): SIGTERM, then SIGKILL after 5 s."""
  for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
    try:
      os.killpg(p.pid, sig)
    except ProcessLookupError:
      return
    try:
      p.wait(wait)
      return
    except subprocess.TimeoutExpired:
      continue


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if "--" in argv:
    cut = argv.index("--")
    own, rest = argv[:cut], argv[cut + 1:]
  else:
    own, rest = argv, []
  parser = argparse.ArgumentParser(prog="python -m experiments.launch", description=__doc__.split("\n\n")[0],
                                   epilog="Arguments after -- go to `python -m experiments.run`.")
  parser.add_argument("--processes", type=int, default=2, help="number of processes (default 2)")
  parser.add_argument("--devices_per_process", "--devices-per-process", type=int, default=4,
                      help="emulated CPU devices per process (0: leave XLA_FLAGS alone; default 4)")
  parser.add_argument("--port", type=int, default=0, help="coordinator port on 127.0.0.1 (0: a free one)")
  parser.add_argument("--timeout", type=int, default=120,
                      help="seconds a process waits for the coordinator / the others (default 120)")
  parser.add_argument("--module", default="experiments.run", help="module run by every process")
  args = parser.parse_args(own)
  # SIGTERM (e.g. a scheduler cancelling the job) unwinds through launch()'s cleanup, which stops the processes.
  signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
  if not rest:
    parser.error("give the runner's arguments after --, e.g. -- --config=configs/demo.py:smoke --workdir=DIR")
  return launch([sys.executable, "-m", args.module, *rest], args.processes, args.devices_per_process,
                port=args.port, timeout_s=args.timeout)


if __name__ == "__main__":
  sys.exit(main())
