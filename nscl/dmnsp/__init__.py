"""DMNSP (Kang et al., ICCV 2025): multi-layer null spaces, the dynamic coefficient, the method and its recipes."""
