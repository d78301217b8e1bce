"""Exception types raised by whisper_multi's public API.

Every error names the offending value, what was expected and, where a file is involved, the file.
Each type subclasses the built-in exception a caller would already catch (ValueError or OSError),
so ``except ValueError`` keeps working for code written against Transformers.
"""

from __future__ import annotations


class WhisperMultiError(Exception):
    """Base class of every error raised on purpose by whisper_multi."""


class ConfigError(WhisperMultiError, ValueError):
    """A configuration value or configuration file is invalid."""


class InputError(WhisperMultiError, ValueError):
    """Audio, features or token ids handed to the API are not what it accepts."""


class TokenizerError(WhisperMultiError, ValueError):
    """A tokenizer file, language, task or token id is invalid."""


class CheckpointError(WhisperMultiError, OSError):
    """A checkpoint is missing, malformed, unsafe or does not match its configuration."""


class ModelNotAvailableError(CheckpointError):
    """A model named by its Hub name cannot be had here: not in the cache while offline, the Hub out of reach, or no
    such repository, revision or weight file. The command line exits 1 on it (the name may be right; the machine
    lacks the files)."""


class BackendError(WhisperMultiError, ImportError):
    """A framework backend cannot be used as installed or configured."""
