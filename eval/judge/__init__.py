"""Open-ended evaluation with a judge model (MT-Bench style): questions, prompts, scoring, the benchmark job."""
