"""Where a PyTorch model runs: the device, CPU threads and deterministic algorithms."""

from __future__ import annotations

from typing import Any

from qtrack.errors import QtrackError


def qlib_gpu(device: str) -> int:
    """Qlib's `GPU` argument for a qtrack device: -1 runs on the CPU, N on cuda:N."""
    import torch

    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return -1
    index = 0 if device in ("auto", "cuda") else int(device.split(":", 1)[1])
    if not torch.cuda.is_available():
        build = "a CPU build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise QtrackError(f"model.device={device}, but PyTorch {torch.__version__} ({build}) sees no GPU: "
                          "use model.device=auto or cpu")
    if index >= torch.cuda.device_count():
        raise QtrackError(f"model.device={device}, but PyTorch sees {torch.cuda.device_count()} GPU(s)")
    return index


def prepare(num_threads: int | None) -> None:
    """CPU threads (None: PyTorch's default, as qrun has it: one per physical core, or OMP_NUM_THREADS), and
    deterministic algorithms, so that one seed gives one model on a CPU. On a GPU some kernels have no
    deterministic version; torch then warns instead of failing."""
    import torch

    if num_threads:
        torch.set_num_threads(int(num_threads))
    torch.use_deterministic_algorithms(True, warn_only=True)


def device_tags(model: Any) -> dict[str, str]:
    """The device the fitted model ran on, and the GPU's name."""
    import torch

    device = getattr(model, "device", None)
    tags = {"qtrack.device": str(device), "qtrack.torch": torch.__version__,
            "qtrack.torch_threads": str(torch.get_num_threads())}
    if device is not None and device.type == "cuda":
        tags["qtrack.gpu_name"] = torch.cuda.get_device_name(device)
    return tags


def weights_bytes(network: Any) -> bytes:
    """The network's state (after fit: the best epoch's weights), as torch.save writes it."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(network.state_dict(), buffer)
    return buffer.getvalue()
