"""The tf2 backend's converter: the reference frozen graph as a TF2 SavedModel with an OD API
``serving_default`` signature, made once and cached by content (:mod:`harness.data.cache`). Importing this module
imports no TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from harness.core.converter import Converter
from harness.core.errors import ModelError


class TF2Converter(Converter):
    backend = "tf2"
    distributions: ClassVar[tuple[str, ...]] = ("tensorflow", "tensorflow-hub")
    #: bump when convert_reference changes what it writes (part of the cache key)
    revision = 1
    #: the artifacts were keyed by the runtime class before the converter was split out of it
    cache_identity = "backends.tf2.TF2Detector"

    @classmethod
    def convert_reference(cls, graph: Path, out_dir: Path) -> Path:
        """The reference frozen graph as a TF2 SavedModel with an OD API ``serving_default`` signature.

        ``wrap_function`` imports the GraphDef into a function graph, ``prune`` cuts it to image in / four
        outputs out, and a ``tf.function`` with input_signature uint8 ``[1, None, None, 3]`` named
        ``input_tensor`` becomes the signature, exactly like exporter_main_v2.py's output.
        """
        from backends._tf_common import import_tf
        from backends.tf1 import OD_API_NAMES, read_graph_def
        from backends._tf_common import OD_API_OUTPUTS, REFERENCE_INPUT, SIGNATURE

        tf = import_tf()
        graph_def = read_graph_def(tf, Path(graph))

        def _import() -> None:
            tf.compat.v1.import_graph_def(graph_def, name="")

        wrapped = tf.compat.v1.wrap_function(_import, [])
        g = wrapped.graph
        try:
            image = g.get_tensor_by_name(OD_API_NAMES["input"])
            outs = {OD_API_OUTPUTS[k]: g.get_tensor_by_name(OD_API_NAMES[k]) for k in OD_API_OUTPUTS}
        except KeyError as exc:
            raise ModelError(f"{graph} is not an Object Detection API graph: {exc}",
                             "convert_reference expects image_tensor:0 and detection_*:0 tensors") from exc
        pruned = wrapped.prune(image, outs)
        module = tf.Module()
        module.detect = pruned

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name=REFERENCE_INPUT)])
        def serve(input_tensor: Any) -> dict[str, Any]:
            return module.detect(input_tensor)

        module.serve = serve
        target = Path(out_dir) / "saved_model"
        tf.saved_model.save(module, str(target), signatures={SIGNATURE: serve})
        return target
