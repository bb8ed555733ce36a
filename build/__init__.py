"""Build side of vaani: export to ONNX, parity gate, engines and the Triton repository."""
