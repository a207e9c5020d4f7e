"""The "bare loop" side of the stage-attribution benchmark: each framework called directly on a ready input.

For every backend, :func:`ready_input` makes, with its own code (no ``harness`` or adapter code), the input a
careful hand-written script would hand the framework: already in its layout, channel order, dtype, memory
format and contiguity, so that the framework has nothing to convert. :func:`bare_call` returns a function
that runs exactly the framework call such a script would make on that input, on the *same* loaded
session/function/module/net the adapter holds, ending when the outputs are numpy arrays on the host (the rule
that ends the harness's infer stage too). Nothing from ``harness`` runs inside it: no stage timer, no
dataclasses, no ``Detector`` method.

Comparing the harness's ``infer`` time with this loop is what shows stage attribution: if the adapter's
preprocessing left work for the framework (a reversed-channel view it must copy, a dtype it must cast), that
work lands in the harness's infer time and not in the bare loop's. (A bare loop fed the adapter's own
preprocessed input could not see that: it would pay the same hidden cost.)

Why reach into the adapters' private attributes: the comparison must run the very same session (the same
graph, threads and optimizations), otherwise it would compare two loads, not the harness against no harness.

What each bare call is:

* tf1: ``sess.run(fetches, feed_dict={image_tensor: x})``
* tf2: the ``serving_default`` ConcreteFunction called with the input tensor, the four outputs ``.numpy()``
* onnxruntime: ``session.run(output_names, {input_name: x})``
* opencv: ``net.setInput(blob); net.forward(out_names)``
* tflite: ``set_tensor``, ``invoke``, ``get_tensor`` per output
* torch: under ``torch.inference_mode``: ``module(x)``, the port's NMS (the same postprocessor that sits inside
  the TF graph, so every side does the same work), one ``.cpu().numpy()`` of the ``[K, 6]`` result
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

BareCall = Callable[[Any], Any]


def _rgb(frame_bgr: Any) -> Any:
    import cv2

    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)[None]  # [1, H, W, 3] uint8, contiguous


def ready_input(backend: str, det: Any, frame_bgr: Any) -> Any:
    """The framework's ready input for ``frame_bgr`` (already at the network's input size), made here."""
    if backend in ("tf1", "onnxruntime", "tflite"):
        if backend == "onnxruntime" and (det._dtype is not np.uint8 or det._nchw):
            raise NotImplementedError("ready input written for uint8 NHWC ONNX models (the reference)")
        return _rgb(frame_bgr)
    if backend == "tf2":
        import tensorflow as tf

        return tf.constant(_rgb(frame_bgr))
    if backend == "opencv":
        import cv2

        s = det.spec
        return cv2.dnn.blobFromImage(frame_bgr, s.scale, s.size, s.mean, s.swap_rb, False)
    if backend == "torch":
        import torch

        x = torch.from_numpy(_rgb(frame_bgr)).permute(0, 3, 1, 2).float() * (2.0 / 255.0) - 1.0
        x = x.contiguous(memory_format=torch.channels_last if det._channels_last else torch.contiguous_format)
        return x.to(det.device)
    raise NotImplementedError(backend)


def _tf1(det: Any) -> BareCall:
    sess, fetches, image = det._sess, det._fetches, det._input

    def run(x: Any) -> Any:
        return sess.run(fetches, feed_dict={image: x})

    return run


def _tf2(det: Any) -> BareCall:
    fn, name = det._fn, det._input_name
    keys = list(det._outputs.values())

    def run(x: Any) -> Any:
        out = fn(**{name: x})
        return [out[k].numpy() for k in keys]

    return run


def _onnxruntime(det: Any) -> BareCall:
    sess, names, input_name = det._session, det._out_names, det._input_name

    def run(x: Any) -> Any:
        return sess.run(names, {input_name: x})

    return run


def _opencv(det: Any) -> BareCall:
    net, names = det._net, det._out_names

    def run(x: Any) -> Any:
        net.setInput(x)
        return net.forward(names)

    return run


def _tflite(det: Any) -> BareCall:
    it = det._it
    index = det._input["index"]
    outs = [d["index"] for d in det._outputs]

    def run(x: Any) -> Any:
        it.set_tensor(index, x)
        it.invoke()
        return [it.get_tensor(i) for i in outs]

    return run


def _torch(det: Any) -> BareCall:
    import torch

    from backends import torch_ssdlite

    if det.kind not in ("ssdlite-port", "torchscript:ssdlite"):
        raise NotImplementedError(f"bare loop written for the SSDLite port, not {det.kind}")
    module = det.model
    cfg = det._port_config
    iou, score, top = float(cfg["nms_iou_threshold"]), float(cfg["nms_score_threshold"]), int(cfg["max_detections"])
    offset = int(cfg["label_offset"])

    def run(x: Any) -> Any:
        with torch.inference_mode():
            boxes, scores = module(x)
            b, s, c = torch_ssdlite.postprocess(boxes[0], scores[0], iou_threshold=iou, score_threshold=score,
                                                max_detections=top)
            return torch.cat([b, s[:, None], (c + offset).float()[:, None]], 1).cpu().numpy()

    return run


BARE_CALLS: dict[str, Callable[[Any], BareCall]] = {
    "tf1": _tf1,
    "tf2": _tf2,
    "onnxruntime": _onnxruntime,
    "opencv": _opencv,
    "tflite": _tflite,
    "torch": _torch,
}


def bare_call(backend: str, det: Any) -> BareCall:
    """The direct framework call for ``det`` (a loaded detector of ``backend``)."""
    return BARE_CALLS[backend](det)
