<?php

declare(strict_types=1);

namespace App\Support;

/**
 * A deliberate mistake for the leak detector to find: a static array that
 * grows by one entry per request of GET /leak and is never emptied.
 */
final class LeakyCache
{
    /** @var list<string> */
    public static array $items = [];
}
