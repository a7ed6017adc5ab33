"""What is wrong with a photo folder before training on it: duplicates and train/validation leaks, likely label
errors, off-topic photos and class imbalance, from the pretrained backbone's pooled feature of each photo."""
