<?php

declare(strict_types=1);

namespace Courser\Relay;

/**
 * Builds the relay that an address (the RR_RELAY variable) names.
 */
final class Relay
{
    /** The address used when RR_RELAY is not set. */
    public const DEFAULT_ADDRESS = 'pipes';

    /**
     * Accepted addresses:
     *  - "pipes" or "pipes://stdin:stdout": frames come on STDIN and go to STDOUT;
     *  - "unix:///path/to.sock": a unix socket that the server listens on;
     *  - "tcp://host:port": a TCP socket that the server listens on.
     *
     * @throws \InvalidArgumentException for any other address
     */
    public static function create(string $address): RelayInterface
    {
        if ($address === 'pipes' || $address === 'pipes://stdin:stdout') {
            return new StreamRelay(
                defined('STDIN') ? STDIN : fopen('php://stdin', 'rb'),
                defined('STDOUT') ? STDOUT : fopen('php://stdout', 'wb'),
            );
        }

        if (preg_match('#^unix://(.+)$#', $address) === 1) {
            return new SocketRelay($address);
        }

        if (preg_match('#^tcp://(\[[0-9a-fA-F:.]+\]|[^:/\[\]]+):(\d{1,5})$#', $address, $match) === 1
            && (int) $match[2] > 0 && (int) $match[2] <= 65535) {
            return new SocketRelay($address);
        }

        throw new \InvalidArgumentException(sprintf(
            'Unsupported relay address "%s"; expected "pipes", "pipes://stdin:stdout", "unix:///path" or "tcp://host:port".',
            $address,
        ));
    }
}
