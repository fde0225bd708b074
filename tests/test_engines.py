"""Ray and Dask, the engines users reach for beyond one machine: cowbuf objects travel
by value there, with their memory as one out-of-band pickle buffer (protocol 5). Ray
hands it to its workers from its object store without a copy (a frozen cowbuf object on
the store's memory); Dask ships it as a frame. Each test starts and stops its engine,
sized for a 2-core machine, in an interpreter of its own: the engines leave threads
behind, and the fork tests need a single-threaded test process."""

from __future__ import annotations

import importlib.util

import pytest
from helpers import run_python


def _needs(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed for this Python")


def test_ray_put_get_and_tasks_share_the_store_without_copies():
    _needs("ray")
    run_python("""
        import os, sys
        import numpy as np
        import ray
        import cowbuf
        from cowbuf import _core
        from helpers import mapping_of, python_env
        import sharing_workers as w

        # the workers import the tests' worker functions, and this cowbuf
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
                 object_store_memory=256 << 20, configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": python_env()["PYTHONPATH"]}})
        try:
            a = cowbuf.array("q", range(1_000_000))
            back = ray.get(ray.put(a))
            assert isinstance(back, cowbuf.Array) and back == a
            assert back.readonly  # the store's memory is read-only
            assert _core._region_state(back.region)[0].fd == -1  # not cowbuf's memory
            if sys.platform.startswith("linux"):
                # the items lie in the object store's own mapping: no copy was made
                assert "cowbuf" not in mapping_of(np.asarray(back).ctypes.data)["path"]
            try:
                back[0] = 1
            except TypeError:
                pass
            else:
                raise AssertionError("wrote to Ray's object store")
            frozen = cowbuf.array("d", [0.5] * 1000)
            frozen.freeze()
            assert ray.get(ray.put(frozen)) == frozen

            small = cowbuf.array("i", range(100_000))
            total, readonly, foreign = ray.get(ray.remote(w.zero_copy_total).remote(small))
            assert total == sum(range(100_000)) and readonly and foreign
            made = ray.get(ray.remote(w.make_array).remote(1000))
            assert made.tolist() == list(range(1000))
        finally:
            ray.shutdown()
        print("ok")
    """, timeout=600, env={"RAY_raylet_start_wait_time_s": "120"})


def test_dask_ships_the_memory_as_a_frame_and_computes_exactly():
    _needs("distributed")
    run_python("""
        import distributed
        from distributed.protocol import deserialize, serialize
        import cowbuf
        import sharing_workers as w

        a = cowbuf.array("d", [x / 7 for x in range(100_000)])
        header, frames = serialize(a)
        assert any(memoryview(f).nbytes == a.nbytes for f in frames)
        back = deserialize(header, frames)
        assert back == a and back.typecode == "d"

        if __name__ == "__main__":
            with distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                          processes=True, dashboard_address=None,
                                          worker_dashboard_address=None,
                                          silence_logs=50) as cluster, \\
                    distributed.Client(cluster) as client:
                arrays = [cowbuf.array("q", range(i * 1000, (i + 1) * 1000))
                          for i in range(6)]
                futures = client.map(w.total, arrays)
                assert client.gather(futures) == [a.sum() for a in arrays]
                made = client.submit(w.make_array, 5000).result()
                assert made.tolist() == list(range(5000))
                frozen = cowbuf.array("f", [1.5] * 100_000)
                frozen.freeze()
                assert client.submit(w.total, frozen).result() == 150_000.0
            print("ok")
    """, timeout=600)
