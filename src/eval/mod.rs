//! Reads a generated image back with classical image analysis and checks
//! the attributes its prompt asked for.
