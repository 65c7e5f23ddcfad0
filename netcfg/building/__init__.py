"""Spec -> nn.Module: builder, torch build functions, init, ties, devices, memory."""
