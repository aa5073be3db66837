<?php

declare(strict_types=1);

namespace Courser\Exception;

/**
 * Base class of every exception that the Courser SDK throws.
 */
class CourserException extends \RuntimeException
{
}
