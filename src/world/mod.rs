//! The procedural world of coloured shapes that the built-in model is
//! trained on: scenes, captions in English and Chinese, and rendering.
