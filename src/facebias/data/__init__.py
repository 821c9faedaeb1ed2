"""Face data: SynthFaces, the CelebA reader, folder reader, cache, bias samplers, datamodule."""
