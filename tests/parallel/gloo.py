"""Real processes on the gloo backend (CPU) for the parallel tests: forked, bound to 127.0.0.1
only (the store listens on a socket bound here to a free port, gloo on the loopback device),
killed past a deadline."""

import datetime
import os
import socket
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

DEADLINE = 120  # seconds for a whole group of processes (they take ~5-20 s here)


def _worker(rank: int, world: int, port: int, listen_fd: int, out: str, fn, args) -> None:  # noqa: ANN001
    try:
        torch.set_num_threads(1)
        os.environ["GLOO_SOCKET_IFNAME"] = "lo"
        timeout = datetime.timedelta(seconds=60)
        fd = listen_fd if rank == 0 else -1
        store = dist.TCPStore("127.0.0.1", port, world, rank == 0, timeout, master_listen_fd=fd)
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world, timeout=timeout)
        torch.save(fn(rank, world, *args), Path(out) / f"rank{rank}.pt")
        dist.destroy_process_group()
    except BaseException:
        (Path(out) / f"rank{rank}.err").write_text(traceback.format_exc())
        raise


def run_gloo(world: int, fn: Callable, *args: object) -> list:
    """[fn(rank, world, *args) for each rank], each run in its own gloo process."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # a free port, on the loopback only
    listener.listen()
    port = listener.getsockname()[1]
    ctx = mp.get_context("fork")
    with tempfile.TemporaryDirectory() as out:
        procs = [
            ctx.Process(target=_worker, args=(r, world, port, listener.fileno(), out, fn, args))
            for r in range(world)
        ]
        try:
            for proc in procs:
                proc.start()
            listener.close()
            end = time.monotonic() + DEADLINE
            for proc in procs:
                proc.join(max(0.0, end - time.monotonic()))
            errors = [p.read_text() for p in sorted(Path(out).glob("*.err"))]
            assert not errors, errors[0]
            assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
            return [torch.load(Path(out) / f"rank{r}.pt") for r in range(world)]
        finally:
            listener.close()
            for proc in procs:
                if proc.is_alive():
                    proc.kill()
                    proc.join(5)
