"""What jobs read: videos and images, ground truth, preprocessing, calibration frames, model references, the
artifact cache and the asset manifests with their downloads and checksums."""
