<?php

declare(strict_types=1);

namespace Courser\Exception;

/**
 * The bytes on the relay do not follow the Goridge v3 / RoadRunner worker
 * protocol, for example a bad header CRC or an unknown control command.
 */
class ProtocolException extends CourserException
{
}
