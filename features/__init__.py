"""Media → arrays: decoding, CLIP image/video encoders, and the feature store."""
