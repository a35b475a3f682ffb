"""The image layer: from a photo to the photographed leg, its marker, scale, orientation and verdict.

One layer below both model families (``smi_features``, ``smi_deep``), above the data
layer (``smi_data``):

* :func:`~smi_image.segment.segment_leg`: the one segmentation (learned U-Net or the
  classical background/Canny finder) both families and ``predict`` call;
* :mod:`~smi_image.silhouette`: the upright silhouette with sub-pixel row edges on the
  full-resolution photo (what the features measure);
* :mod:`~smi_image.marker`: the ArUco card (found, kept out of the leg, painted out);
* :mod:`~smi_image.quality`: the gate that accepts a photo or refuses it with a reason;
* :mod:`~smi_image.learned`, :mod:`~smi_image.nets`, :mod:`~smi_image.train`: the learned
  segmenter, its network and its training on synthetic ``wild`` scenes;
* :mod:`~smi_image.evaluate`: ``legsmi segment`` and ``legsmi segeval``.

Modules import torch only inside the functions that need it.
"""
