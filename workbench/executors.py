"""Where work units run: in process, in a local worker pool, or on a Ray cluster (a local one by default).

A unit of work is a picklable payload handed to a pure function (benchmark chunks:
``evalbench.runner.score_chunk``; persona batches: :func:`persona.inference.infer_cards`); workers return rows
and the driver alone writes them to the workspace (DuckDB has one writer), so a killed job resumes with
nothing lost or doubled whatever the executor. What every unit shares (a trained model, a catalogue) goes to
each worker once: :meth:`Executor.map_shared` (a Ray object, or a worker process's initialiser). Workers load
their models once per process (``functools.lru_cache``), so the same inputs give the same numbers on every
executor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

EXECUTORS = ("local", "process", "ray")


class Executor:
    """``imap(fn, payloads)`` yields ``(index, result)`` as results arrive (any order); ``map_shared(fn, shared,
    payloads)`` the same for ``fn(shared, payload)``, ``shared`` sent to each worker once."""

    name = "local"
    workers = 1

    def imap(self, fn: Callable[[Any], Any], payloads: list[Any]) -> Iterator[tuple[int, Any]]:
        for i, p in enumerate(payloads):
            yield i, fn(p)

    def map_shared(
        self, fn: Callable[[Any, Any], Any], shared: Any, payloads: Iterable[Any], *, window: int | None = None
    ) -> Iterator[tuple[int, Any]]:
        """``(index, fn(shared, payload))`` for each payload (``payloads`` may be a generator: at most
        ``window`` are in flight at once, default two per worker, so a large job's inputs are made as they are
        needed)."""
        for i, p in enumerate(payloads):
            yield i, fn(shared, p)

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

    def map_shared(self, fn, shared, payloads, *, window=None):
        import os
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from multiprocessing import get_context

        # a pool of its own whose workers receive ``shared`` once, when they start
        pool = ProcessPoolExecutor(
            max_workers=self.workers or max(1, os.cpu_count() or 2),
            mp_context=get_context("spawn"),
            initializer=_keep_shared,
            initargs=(shared,),
        )
        try:
            pending: dict = {}
            limit = window or 2 * self.workers
            for i, p in enumerate(payloads):
                pending[pool.submit(_call_kept, fn, p)] = i
                while len(pending) >= limit:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        yield pending.pop(fut), fut.result()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield pending.pop(fut), fut.result()
        finally:
            pool.shutdown(cancel_futures=True)

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


_KEPT: dict[str, Any] = {}


def _keep_shared(shared) -> None:
    _KEPT["shared"] = shared


def _call_kept(fn, payload):
    return fn(_KEPT["shared"], payload)


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

    def map_shared(self, fn, shared, payloads, *, window=None):
        """One Ray actor per worker holds ``shared`` (put in the object store once, read by each actor once);
        payloads go to the actors in turn, at most ``window`` in flight."""
        ray = self._ray

        @ray.remote
        class _Worker:
            def __init__(self, shared_value):
                self.shared = shared_value

            def run(self, payload):
                return fn(self.shared, payload)

        ref = ray.put(shared)
        actors = [_Worker.remote(ref) for _ in range(max(1, self.workers))]
        pending: dict = {}
        limit = window or 2 * len(actors)
        try:
            for i, p in enumerate(payloads):
                pending[actors[i % len(actors)].run.remote(p)] = i
                while len(pending) >= limit:
                    done, _ = ray.wait(list(pending), num_returns=1)
                    for r in done:
                        yield pending.pop(r), ray.get(r)
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for r in done:
                    yield pending.pop(r), ray.get(r)
        finally:
            for a in actors:
                ray.kill(a)

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
