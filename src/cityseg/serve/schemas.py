"""The API's schemas: the JSON bodies it answers with, as pydantic models, which also make the OpenAPI schema."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    error: str = Field(description="short machine-readable code, e.g. not_an_image, upload_too_large, busy")
    message: str = Field(description="one line: what is wrong and what to do")


class ClassInfo(BaseModel):
    index: int = Field(description="class index: the value in the label PNG with ids=classes")
    name: str
    # lists of fixed length, not tuples: a tuple's JSON schema (items as a list) is not a valid OpenAPI 3.1 schema
    color: list[int] = Field(min_length=3, max_length=3, description="RGB colour of the class, 0..255 each")
    label_id: int = Field(description="official Cityscapes label id of the class")


class ClassesBody(BaseModel):
    class_set: str = Field(description="train19, categories, labelids or kmeans")
    classes: list[ClassInfo]


class ClassShare(ClassInfo):
    pixels: int
    share: float = Field(description="fraction of the image's pixels, 0..1")


class Timing(BaseModel):
    decode: float = Field(description="decoding and preprocessing, ms")
    queue: float = Field(description="waiting for the model, ms")
    model: float = Field(description="the forward pass of the batch the image was in, ms")
    resize: float = Field(description="logits back to the photo's size and argmax, ms")


class PredictionBody(BaseModel):
    width: int
    height: int
    latency_ms: float = Field(description="server time from the received upload to the finished result")
    timing_ms: Timing
    batch_size: int = Field(description="images that shared the forward pass")
    backend: str
    class_set: str
    classes: list[ClassShare] = Field(description="the classes present, largest share first")


class HealthBody(BaseModel):
    status: Literal["ok"]
    model: str
    arch: str
    encoder: str
    backend: str
    class_set: str
    input_size: list[int] = Field(min_length=2, max_length=2, description="(height, width) the model runs at")
    in_flight: int = Field(description="requests being served now")
    queue_size: int = Field(description="requests in flight allowed before 503")
    max_batch: int
    served: int = Field(description="images segmented since start")
