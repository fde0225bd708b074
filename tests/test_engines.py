"""Ray and Dask, the engines users reach for beyond one machine: cowbuf objects travel
by value there, with their memory as one out-of-band pickle buffer (protocol 5). Ray
hands it to its workers from its object store without a copy (a frozen cowbuf object on
the store's memory); Dask ships it as a frame. Each test starts and stops its engine,
sized for a 2-core machine."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import sharing_workers as w
from helpers import mapping_of, python_env

import cowbuf
from cowbuf import _core

LINUX = sys.platform.startswith("linux")


# -- Ray ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray():
    ray = pytest.importorskip("ray")
    # the workers import the tests' worker functions, and this cowbuf
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             object_store_memory=256 << 20, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": python_env()["PYTHONPATH"]}})
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_get_of_a_put_array_is_a_frozen_view_of_the_store(ray):
    a = cowbuf.array("q", range(1_000_000))
    back = ray.get(ray.put(a))
    assert isinstance(back, cowbuf.Array) and back == a
    assert back.readonly  # the store's memory is read-only
    assert _core._region_state(back.region)[0].fd == -1  # not a copy in cowbuf memory
    if LINUX:
        # the items lie in the object store's own mapping: no copy was made
        assert "cowbuf" not in mapping_of(np.asarray(back).ctypes.data)["path"]
    with pytest.raises(TypeError):
        back[0] = 1
    frozen = cowbuf.array("d", [0.5] * 1000)
    frozen.freeze()
    assert ray.get(ray.put(frozen)) == frozen


def test_ray_tasks_receive_cowbuf_arrays_and_return_them(ray):
    a = cowbuf.array("i", range(100_000))
    remote_total = ray.remote(w.zero_copy_total)
    total, readonly, foreign = ray.get(remote_total.remote(a))
    assert total == sum(range(100_000)) and readonly and foreign
    made = ray.get(ray.remote(w.make_array).remote(1000))
    assert made.tolist() == list(range(1000))


# -- Dask ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, worker_dashboard_address=None,
                                  silence_logs=50) as cluster, \
            distributed.Client(cluster) as client:
        yield client


def test_dask_sends_the_memory_as_a_frame():
    from distributed.protocol import deserialize, serialize

    a = cowbuf.array("d", [x / 7 for x in range(100_000)])
    header, frames = serialize(a)
    assert any(memoryview(f).nbytes == a.nbytes for f in frames)
    back = deserialize(header, frames)
    assert back == a and back.typecode == "d"


def test_dask_submit_and_map_over_cowbuf_arrays(dask_client):
    arrays = [cowbuf.array("q", range(i * 1000, (i + 1) * 1000)) for i in range(6)]
    futures = dask_client.map(w.total, arrays)
    assert dask_client.gather(futures) == [a.sum() for a in arrays]
    made = dask_client.submit(w.make_array, 5000).result()
    assert made.tolist() == list(range(5000))
    frozen = cowbuf.array("f", [1.5] * 100_000)
    frozen.freeze()
    assert dask_client.submit(w.total, frozen).result() == 150_000.0
