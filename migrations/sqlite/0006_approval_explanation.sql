-- Why the gate holds a command: its reading of the command, the rules it
-- considered and the verdict (as `jarvis check-command --explain` prints it).
ALTER TABLE approvals ADD COLUMN explanation TEXT NOT NULL DEFAULT '';
