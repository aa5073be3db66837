<?php

declare(strict_types=1);

namespace Courser\Exception;

/**
 * The relay failed: the connection could not be opened, a read or write
 * failed, or the other side closed it (EOF).
 */
class RelayException extends CourserException
{
}
