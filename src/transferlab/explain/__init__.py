"""Why a model answered as it did: Grad-CAM heatmaps of a classifier's last convolutional feature map."""
