"""A v2 server this project did not write, for the v2 client's tests: MLServer's own ``mlserver start``
hosting the reference SSD's ONNX file through the smallest model class MLServer needs (ONNX Runtime, the
OD API's outputs as the graph makes them). Nothing of harness.serving is used here."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse

OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")


class OnnxSSD(MLModel):
    async def load(self) -> bool:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(self.settings.parameters.uri, opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        frames = NumpyCodec.decode_input(payload.inputs[0]).astype(np.uint8)
        names = [o.name for o in self.session.get_outputs()]
        got = dict(zip(names, self.session.run(None, {self.input_name: frames})))
        outputs = [NumpyCodec.encode_output(name, np.asarray(got[f"{name}:0"] if f"{name}:0" in got else got[name]))
                   for name in OUTPUTS]
        return InferenceResponse(model_name=self.name, outputs=outputs)
