"""The MLflow model registry loop: register candidates, promote through gates, sign edge bundles, play a device."""
