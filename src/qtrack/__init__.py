"""qtrack: Hydra-configured Qlib training pipeline tracked in MLflow."""

__version__ = "0.1.0"
