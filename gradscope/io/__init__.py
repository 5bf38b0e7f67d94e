"""Reading and writing files: arrays, weight files in the formats people have, Keras models, outputs."""
