"""The optimize stage: an Optuna study over one model's hyperparameters, every trial a train run.

settings.py checks what was asked; study.py keeps the study in its storage and shares it safely between
workers; sweep.py claims and runs trials; objective.py turns one trial into a train run; report.py writes
and prints the outcome; run.py ties them together."""
