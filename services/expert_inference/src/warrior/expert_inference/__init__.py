"""gRPC model server for one expert: llama.cpp engine, self-registration."""
