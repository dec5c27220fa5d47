"""Data: mocap readers, retargeting to the Anny pose, pose banks, cameras, detector noise, the
synthetic sample engine, and the Human3.6M layout."""
