import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One CPU thread, as the training processes of the tests run (--threads 1): two threads on a
    loaded 2-core machine spend most of a step of these tiny models waiting for each other, and
    a run and its reference must use one thread count to agree bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
