"""Mission control, memory and the working mode (anima.mission.*, anima.memory.list,
anima.runtime.*; operations.md §4). ANIMA keeps these in files under ~/.anima; here they are
rows (README D7): MissionState (one JSON document), MissionFile, MemoryEntry."""
