"""The bundled demo clip (`demo://`), its ground truth, and the script that renders them."""
