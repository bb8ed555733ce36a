"""Running the serving core: the pip `tritonserver` process (`process`) and `vaani serve` (`commands`)."""
