"""Every benchmark in one place: the CPU bench against FastAPI, the GPU benchmark and its reports,
and the scripts that run them on a GPU machine (`*.sh`); recorded results under `results/`."""
