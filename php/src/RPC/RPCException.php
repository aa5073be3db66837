<?php

declare(strict_types=1);

namespace Courser\RPC;

use Courser\Exception\CourserException;

/**
 * An RPC reply that does not fit the protocol: options missing, a sequence
 * number that does not match the request, a reply that cannot be decoded, or
 * an argument that cannot be encoded.
 */
class RPCException extends CourserException
{
}
