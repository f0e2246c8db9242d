"""Where benchmark work units run: in process, in a local worker pool, or on a Ray cluster.

A unit of work is a picklable payload handed to a pure function (``evalbench.runner.score_chunk``);
workers return score rows and the driver alone writes them to the workspace (DuckDB has one writer), in
one transaction per chunk, so a killed run resumes with nothing lost or doubled whatever the executor.
Workers load their models once per process (``functools.lru_cache``), so the same encoders give the
same numbers on every executor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

EXECUTORS = ("local", "process", "ray")


class Executor:
    """``imap(fn, payloads)`` yields ``(index, result)`` as results arrive (any order)."""

    name = "local"
    workers = 1

    def imap(self, fn: Callable[[Any], Any], payloads: list[Any]) -> Iterator[tuple[int, Any]]:
        for i, p in enumerate(payloads):
            yield i, fn(p)

    def close(self) -> None:
        pass


class ProcessExecutor(Executor):
    """A local pool of worker processes (``spawn``, so torch and DuckDB state are not forked)."""

    name = "process"

    def __init__(self, workers: int | None = None):
        import os
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        self.workers = workers or max(1, (os.cpu_count() or 2))
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"))

    def imap(self, fn, payloads):
        from concurrent.futures import as_completed

        futures = {self._pool.submit(fn, p): i for i, p in enumerate(payloads)}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


class RayExecutor(Executor):
    """Ray tasks: ``address=None`` starts (or joins) a local cluster; ``"auto"`` or ``ray://host:port`` a
    running one. Needs the optional ``ray`` extra (``pip install 'persona-workbench[ray]'``)."""

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None):
        try:
            import ray
        except ImportError as exc:
            raise ImportError(
                "--executor ray needs Ray: pip install 'ray[default]>=2.30' (or the project's [ray] extra)"
            ) from exc
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            elif workers:
                kwargs["num_cpus"] = workers
            ray.init(**kwargs)
            self._started = True
        self.workers = int(ray.available_resources().get("CPU", 1))

    def imap(self, fn, payloads):
        ray = self._ray
        remote = ray.remote(fn)
        refs = {remote.remote(p): i for i, p in enumerate(payloads)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield refs[ref], ray.get(ref)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


def get_executor(name: str = "local", *, workers: int | None = None, address: str | None = None) -> Executor:
    if name == "local":
        return Executor()
    if name == "process":
        return ProcessExecutor(workers)
    if name == "ray":
        return RayExecutor(workers, address)
    raise ValueError(f"unknown executor {name!r}; available: {', '.join(EXECUTORS)}")


def chunked(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), max(1, size)):
        yield items[i : i + size]
