"""Running the serving core: the pip `tritonserver` process (`process`), `vaani serve` (`commands`)
and the container entrypoint check of TensorRT plans (`plan_guard`)."""
