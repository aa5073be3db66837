<?php

declare(strict_types=1);

namespace App\Http\Middleware;

use Illuminate\Auth\Middleware\Authenticate as Middleware;

final class Authenticate extends Middleware
{
    /** An API-style app: no login page to redirect to, a 401 instead. */
    protected function redirectTo($request)
    {
        return null;
    }
}
